"""``haq-rl report``: a markdown report with figures of one or several run directories.

    haq-rl report runs/LeNet5Size-v1-ddpg-s0
    haq-rl report runs/edge runs/cloud --out reports/edge-vs-cloud
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report", help="markdown report with figures of one or several search runs",
        description="Write report.md plus report/ (PNG figures and CSV tables) for one run directory, "
                    "or a side-by-side comparison of several.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by haq-rl search")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="where to write report.md (default: the run directory for one run, "
                             "reports/compare-<timestamp> for several)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from haq_rl.report import write_report  # pandas/matplotlib: imported only when used

    path = write_report(args.run_dirs, args.out)
    print(f"report: {path}")
    return 0
