"""Training texts: ``--data`` specs, readers, generated sets and the Vocabulary builder."""
