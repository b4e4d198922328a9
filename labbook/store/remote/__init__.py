"""The lab's shared notebook on PostgreSQL (issue #13).

Every node keeps recording into its own SQLite store; a push (``push.push_round``,
a thread of ``labbook watch`` and ``labbook remote push``) upserts whole-run
snapshots of the runs that changed into the lab's PostgreSQL, and ``--remote``
reads go there.

* ``config``  — ``[remote]`` in config.toml and its environment overrides;
* ``conn``    — ``connect()``: one psycopg connection, errors as one line;
* ``schema``  — the server's DDL (schema ``labbook``), ``remote init``'s checks;
* ``push``    — the push round;
* ``read``    — reads (the dialect layer), ``spool`` — ephemeral nodes' batches.

psycopg is an optional extra (``labbook[remote]``): it is imported inside
functions only, so that nothing local pays for it.
"""
