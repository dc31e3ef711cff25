"""The SQLite ceiling: `bench/ceiling/minimal_app.py` with SQLite in place of PostgreSQL.

FastAPI, one sqlite3 connection on one thread (SQLite has one writer), WAL, one conditional
upsert per request. Run by `bench/create_throughput.py`; the file is `MINIMAL_SQLITE`.
"""

import asyncio
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

SQL = ("INSERT INTO claims (user_id, prompt_key, status, created_at) VALUES (?, lower(?), 'generating', "
       "datetime('now')) ON CONFLICT (user_id, prompt_key) DO UPDATE SET status='generating', "
       "created_at=datetime('now') WHERE claims.status='failed' OR claims.created_at < datetime('now', '-1 day') "
       "RETURNING rowid")
executor = ThreadPoolExecutor(1)
conn = sqlite3.connect(os.environ["MINIMAL_SQLITE"], isolation_level=None, check_same_thread=False)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("CREATE TABLE IF NOT EXISTS claims (user_id INTEGER, prompt_key TEXT, status TEXT, created_at TEXT, "
             "PRIMARY KEY (user_id, prompt_key))")


class CreateReq(BaseModel):
    tg_user_id: int
    prompt: str


app = FastAPI()


def _claim(user: int, prompt: str):  # type: ignore[no-untyped-def]
    return conn.execute(SQL, (user, prompt)).fetchone()


@app.post("/create")
async def create(req: CreateReq):  # type: ignore[no-untyped-def]
    row = await asyncio.get_running_loop().run_in_executor(executor, _claim, req.tg_user_id, req.prompt)
    if row is None:
        return JSONResponse({"status": "duplicate"}, status_code=409)
    return JSONResponse({"status": "accepted", "id": row[0]}, status_code=202)
