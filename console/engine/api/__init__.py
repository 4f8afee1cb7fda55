"""The engine's API: request and reply types and the method table.

Every engine method is declared once in `methods.TABLE`: its name, request type (a frozen
msgspec Struct in `requests`), reply type (`replies`), the least role allowed to call it,
whether it changes anything, and a one-line doc. The server (`console.engine.server`)
decodes each request into its type, checks the role, read-only sessions and ownership from
the table before any handler runs, and audits every changing or refused call.

To add a method:
1. declare its request in `requests.py` (or reuse one) and its reply in `replies.py`;
2. add a `Method(...)` line to `methods.TABLE` (least role; `changes=True` if it changes
   anything; `others=` the least role that may act on another user's job or for another user);
3. implement `async def name(self, caller: Caller, req: YourRequest) -> YourReply` on a
   service class (`console.engine.services`) and list it in that service's `handlers()`;
4. regenerate the protocol document: `fleetdeck api --format md > docs/PROTOCOL.md`.
The engine refuses to start when a table method has no handler or a handler no table entry.
"""
