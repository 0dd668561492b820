"""nanogan: ProGAN, BigGAN and StyleGAN2 from their papers, one short module per idea.

Read `lessons/00_reading_this_repo.md` first. Every module cites its paper, section and
equation; every module has `tests/test_<module>.py` checking it against an independent reference.
"""

__version__ = "0.1.0"
