"""Training texts, from ``--data`` specs to what training reads, one job per module.

* ``specs`` -- the spec grammar, the paper's presets and ``Kind`` (query or document);
* ``readers`` (local files through ``datasets``), ``hub`` (``hf:`` datasets streamed), ``generated``
  (``builtin``, ``words``, ``bert-tokens``), ``encoding`` (bad UTF-8: where, and a safe repair);
* ``store`` -- ingest: every source streamed once into an on-disk, de-duplicated text store;
* ``tokens`` -- the leaf's token ids of every text, computed once, flat on disk;
* ``texts`` -- :func:`load_texts`, the same ingest as a list of records in memory (small data);
* ``vocabulary`` -- the paper's Vocabulary dataset builder.
"""
