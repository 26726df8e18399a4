"""Database rows streamed as JSON events, with SQLAlchemy's asyncio API and aiosqlite.

At startup (the lifespan) a throwaway SQLite file is created and filled with a few users;
`GET /users` streams them one JSON event per row, each with the row's primary key as `id`.
A client that reconnects sends the last id it saw (`Last-Event-ID`) and gets only later rows.

    python examples/03_database_streaming.py
    curl -N http://127.0.0.1:8000/users
    curl -N http://127.0.0.1:8000/users -H 'Last-Event-ID: 2'    # resume after user 2

aiosqlite runs on asyncio only, so this example does not run under trio.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sse_starlette import EventSourceResponse, JSONServerSentEvent

SAMPLE_USERS = [
    ("Ada Lovelace", "ada@example.org"),
    ("Grace Hopper", "grace@example.org"),
    ("Alan Turing", "alan@example.org"),
    ("Barbara Liskov", "barbara@example.org"),
    ("Edsger Dijkstra", "edsger@example.org"),
]


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(200))


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # A file, not ":memory:": every pooled connection to ":memory:" would see its own,
    # empty database.
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_async_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'users.db'}")
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with sessions.begin() as session:
            session.add_all(User(name=name, email=email) for name, email in SAMPLE_USERS)
        app.state.sessions = sessions
        try:
            yield
        finally:
            await engine.dispose()


def last_event_id(request: Request) -> int:
    # The header comes from the client: anything but a number means "from the start".
    try:
        return int(request.headers.get("last-event-id", "0"))
    except ValueError:
        return 0


async def user_events(
    sessions: async_sessionmaker[AsyncSession], after_id: int
) -> AsyncIterator[JSONServerSentEvent]:
    # The session is opened here, inside the generator, not in the endpoint or a dependency:
    # it then lives exactly as long as the stream, in the task that iterates the stream, and
    # is closed by the generator's own cleanup when the rows run out or the client leaves.
    async with sessions() as session:
        rows = await session.stream_scalars(
            select(User).where(User.id > after_id).order_by(User.id)
        )
        async for user in rows:
            yield JSONServerSentEvent(
                {"id": user.id, "name": user.name, "email": user.email},
                event="user",
                id=str(user.id),
            )


app = FastAPI(title="Database rows over Server-Sent Events", lifespan=lifespan)


@app.get("/users")
async def users(request: Request) -> EventSourceResponse:
    return EventSourceResponse(user_events(request.app.state.sessions, last_event_id(request)))


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=8000)
