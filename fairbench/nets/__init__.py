"""Network definitions: the papers' MLPs and conv encoders, and the branched classifier."""
