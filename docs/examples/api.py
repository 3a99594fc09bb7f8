from auditcli import AuditStore, Filters, InvalidEntryError, QueryEngine, entry_of

store = AuditStore("api-logs")  # or AuditStore() for $AUDIT_LOG_DIR / the default

entry = store.record(
    {
        "action": "team_created",
        "actorId": "user-789",
        "actorEmail": "jane@example.com",
        "organizationId": "org-456",
        "targetId": "team-101",
        "teamId": "team-101",
        "createdAt": "2026-11-25T09:15:22+01:00",
    },
    target_name="Engineering",
)
print(entry["id"], entry["createdAt"], entry["description"])

try:
    store.record({"action": "team_creatd", "actorId": "user-789"})
except InvalidEntryError as exc:  # exit code 3 on the command line
    print(exc.problems)

filters = Filters(actions=("team_created",), org_ids=("org-456",), since="2026-11-25T00:00:00.000Z")
engine = QueryEngine(store, filters.check(store.catalog), order="desc")
total, lines = engine.page(limit=20, offset=0)
print(total, [entry_of(line)["targetId"] for line in lines])
for line in engine.stream():  # every match, one partition in memory at a time
    print(entry_of(line)["description"])
