"""Text watermarks on AG News (4 topics; datamark's keyed stratified 80/20 split of the staged test set): DVBW
word and style, UBW-P, clean-label word and style at r = 1 % and 5 %, judged as Steal, Independent-M and
Independent-T, with AD, TSR, WDR, GErr and WSD.

    python benchmarks/text_agnews.py --arch textcnn

See ``_text_bench.py`` for the configurations (driver: ``_bench.py``); results go to
``benchmarks/results/text_agnews-<arch>.json/.md``.
"""

import sys

from _bench import main
from _text_bench import TEXT_SUITE

if __name__ == "__main__":
    sys.exit(main(TEXT_SUITE, "Text watermarks on AG News", "text_agnews", "ag_news:train", "ag_news:test",
                  default_target=2, doc=__doc__))
