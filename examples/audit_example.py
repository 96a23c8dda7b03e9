"""Audit the example inputs from Python and print what an ML engineer looks at first.

Run from the repository root:  python examples/audit_example.py
The inputs were made by `dataaudit.demo.write_demo_inputs("examples")`: scikit-learn's digits with
planted label flips, duplicates, a degraded scanner, and off-distribution production items
(planted.json says which).
"""

from pathlib import Path

import dataaudit

here = Path(__file__).parent
report = dataaudit.audit(
    here / "examples.csv",
    here / "probs.npy",  # 3 models x N x 10 classes; classes.txt beside it gives the order
    embeddings=here / "embeddings.npy",
    verbosity=1,
)

metrics = report.metrics()
print(f"label-error candidates: {metrics['n_label_errors']} ({metrics['label_error_rate']:.1%})")
errors = report["label_errors"].tables["items"]
top = errors[errors["is_label_error"]].sort_values("error_score", ascending=False).head(10)
print(top[["id", "given_label", "suggested_label", "error_score"]].to_string(index=False))
print("skipped:", report.skipped or "nothing")

out = here / "example-report.html"
report.to_html(out)
print(f"wrote {out}")
