"""Study protocols, one module each: ``run(model_or_run, settings) -> dict`` with a frozen settings dataclass.

A study composes the methods of ``analysis/`` on a model from ``ffnkv.io.load.load_model`` (a trained run or
a pretrained checkpoint: the same function) and returns JSON-able results; every verdict rule lives in
``studies.verdicts``. Rendering (plots, markdown, html, files) is ``studies.report``; the command line
(``cli/``) only turns arguments into settings and calls a study, then its report.
"""
