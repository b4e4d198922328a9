"""How runs come in: ``labbook import`` (:mod:`.importer`), ``labbook run`` (:mod:`.launch`) and the ``labbook watch`` daemon (:mod:`.watch`), sharing discovery and completion (:mod:`.discover`)."""
