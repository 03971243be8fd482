"""How good the champion's predictions for October-December were, now that the outcomes are
known: `sparkml monitor flight_delays@champion --outcomes entities.flights --by month` (the
same code), printed per month with the largest input drift. Cancelled and diverted flights
have no outcome and are left out.

    .venv/bin/python benchmarks/champion_oct_dec.py      # after make demo
"""

from __future__ import annotations

from _common import ROOT


def main() -> None:
    from sparkml_platform import Workspace
    from sparkml_platform.core.errors import GateFailed

    ws = Workspace(str(ROOT / "conf"))
    try:
        result = ws.monitor("flight_delays@champion", "entities.flights", by="month")
    except GateFailed as exc:  # below a floor: still a measurement
        result = exc.result
        print(f"gate: {exc}")
    print(f"model {result['model']} version {result['version']}")
    for month, values in result["periods"].items():
        drift = result["drift"].get(month, {})
        worst = max(drift.items(), key=lambda kv: kv[1]["psi"]) if drift else ("-", {"psi": float("nan")})
        print(f"{month}: {values['rows']:,} flights with an outcome, ROC AUC {values['roc_auc']:.4f}, "
              f"PR AUC {values['pr_auc']:.4f}, log loss {values['log_loss']:.4f}; "
              f"largest drift {worst[0]} (PSI {worst[1]['psi']:.3f})")


if __name__ == "__main__":
    main()
