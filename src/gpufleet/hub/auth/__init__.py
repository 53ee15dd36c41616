"""People and access on the hub: roles, route policies, accounts, sessions, API keys.

Every route declares who may call it; tests/hub/test_policies.py walks `app.routes` and fails
for any route without a policy. How a module declares one:

    from gpufleet.hub.auth import Principal, Role, agent, declare, public, require

    @app.get("/api/v1/things", dependencies=[require(Role.VIEWER)])       # reads
    def things() -> ...

    @app.post("/api/v1/things")                                              # changes: also CSRF-checked
    def change(body: Body, who: Principal = require(Role.OPERATOR)) -> ...:  # `who.name` for audit logs
        ...

    @app.get("/healthz", dependencies=[public()])      # anyone, no credential
    @app.post("/api/v1/push", dependencies=[agent()])  # a node's own bearer credential, checked by the route
    declare(app, "/ui/static", Policy.PUBLIC)           # routes that take no dependencies (mounts, docs)

Roles are ordered: viewer (reads) < operator (also acks, silences, runs allowed commands) <
admin (everything: users, keys, tokens, targets). `require(Role.X)` admits X and above, answers
401 without a credential (a page redirects to /login instead) and 403 with too low a role.
"""

from __future__ import annotations

from .policy import Policy, Principal, Role, agent, declare, public, require, route_policy

__all__ = ["Policy", "Principal", "Role", "agent", "declare", "public", "require", "route_policy"]
