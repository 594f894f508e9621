"""Generate the tiny synthetic cohort of this example (run once; the outputs are committed).

40 patients: a clinical table (age, sex, a few lab values with gaps), 16×16 grey-scale "scans"
as PNG files, and a binary outcome that depends on age and on the brightness of a blob in the
scan, so that fusing both modalities beats either alone. Five patients have no scan.
"""

from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent
rng = np.random.default_rng(7)
n = 40
rows = ["patient_id,age,sex,lab_crp,lab_albumin,scan,response"]
(HERE / "scans").mkdir(exist_ok=True)
for i in range(n):
    pid = f"P{i:03d}"
    age = rng.uniform(35, 85)
    sex = rng.choice(["female", "male"])
    blob = rng.uniform(0, 1)
    yy, xx = np.mgrid[:16, :16]
    img = (
        40 + 160 * blob * np.exp(-((yy - 8) ** 2 + (xx - 8) ** 2) / 18) + rng.normal(0, 8, (16, 16))
    )
    has_scan = i % 8 != 3
    scan = f"scans/{pid}.png" if has_scan else ""
    if has_scan:
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(HERE / scan)
    score = 0.06 * (age - 60) + 3.0 * (blob - 0.5) + rng.normal(0, 0.5)
    crp = "" if rng.uniform() < 0.15 else f"{rng.lognormal(1.5, 0.6):.2f}"
    alb = f"{rng.normal(40, 4):.1f}"
    rows.append(f"{pid},{age:.0f},{sex},{crp},{alb},{scan},{int(score > 0)}")
(HERE / "patients.csv").write_text("\n".join(rows) + "\n")
