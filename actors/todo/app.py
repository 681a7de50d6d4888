"""todo: a JSON CRUD API over wasmcloud:sqldb. The table is created on first use, with SQL that
PostgreSQL and SQLite both accept.

GET    /todos          → [{"id", "title", "done"}, …]
POST   /todos          {"title": "…"}                → 201 {"id", "title", "done": false}
GET    /todos/ID       → {"id", "title", "done"}     (404 when missing)
PATCH  /todos/ID       {"title"?: "…", "done"?: bool} → the updated todo
DELETE /todos/ID       → 204
"""

import time

from lattice_actor import HttpError, Request, Response, http_handler, numbergen, sqldb

SCHEMA = """CREATE TABLE IF NOT EXISTS todos (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    created BIGINT NOT NULL)"""
_ready = False  # per instance: CREATE TABLE IF NOT EXISTS is idempotent anyway


def _ensure_schema() -> None:
    global _ready
    if not _ready:
        sqldb.execute(SCHEMA)
        _ready = True


def _todo(row: dict) -> dict:
    return {"id": row["id"], "title": row["title"], "done": bool(row["done"])}


def _get(todo_id: str) -> dict:
    row = sqldb.query_one("SELECT id, title, done FROM todos WHERE id = $1", [todo_id])
    if row is None:
        raise HttpError(404, f"no todo {todo_id}")
    return _todo(row)


def _body(req: Request) -> dict:
    try:
        body = req.json()
    except ValueError:
        raise HttpError(400, "the body must be JSON") from None
    if not isinstance(body, dict):
        raise HttpError(400, "the body must be a JSON object")
    return body


def _title(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise HttpError(400, '"title" must be a non-empty string')
    return value.strip()


@http_handler
def todos(req: Request) -> Response:
    _ensure_schema()
    parts = [p for p in req.path.split("/") if p]
    if not parts or parts[0] != "todos" or len(parts) > 2:
        return Response.not_found("try /todos")
    if len(parts) == 1:
        if req.method == "GET":
            rows = sqldb.query("SELECT id, title, done FROM todos ORDER BY created, id")
            return Response.json([_todo(r) for r in rows])
        if req.method == "POST":
            title = _title(_body(req).get("title"))
            todo_id = numbergen.generate_guid()
            sqldb.execute("INSERT INTO todos (id, title, done, created) VALUES ($1, $2, 0, $3)",
                          [todo_id, title, time.time_ns()])
            return Response.json({"id": todo_id, "title": title, "done": False}, status=201)
        return Response.error(405, "use GET or POST on /todos", headers={"allow": "GET, POST"})
    todo_id = parts[1]
    if req.method == "GET":
        return Response.json(_get(todo_id))
    if req.method == "PATCH":
        body = _body(req)
        todo = _get(todo_id)
        if "title" in body:
            todo["title"] = _title(body["title"])
        if "done" in body:
            if not isinstance(body["done"], bool):
                raise HttpError(400, '"done" must be true or false')
            todo["done"] = body["done"]
        sqldb.execute("UPDATE todos SET title = $1, done = $2 WHERE id = $3",
                      [todo["title"], int(todo["done"]), todo_id])
        return Response.json(todo)
    if req.method == "DELETE":
        if sqldb.execute("DELETE FROM todos WHERE id = $1", [todo_id]) == 0:
            raise HttpError(404, f"no todo {todo_id}")
        return Response.no_content()
    return Response.error(405, "use GET, PATCH or DELETE on /todos/ID",
                          headers={"allow": "GET, PATCH, DELETE"})
