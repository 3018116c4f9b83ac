"""Option values shared by the command line and the analyses; a light module so that importing
the `report` command does not pull in scipy and matplotlib (they load when a report is built)."""

CD_TESTS = ("nemenyi", "wilcoxon-holm")
SELECTION_RULES = ("best-val-acc", "gap-floor", "all")
FIGURE_FORMATS = ("png", "pdf", "svg")
PARTS = ("pareto", "cd", "sweep", "ablation", "tables", "html")
