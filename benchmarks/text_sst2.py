"""Text watermarks on SST-2 (binary sentiment): DVBW word and style, UBW-P, clean-label word and style at r = 1 %
and 5 %, judged as Steal, Independent-M and Independent-T, with AD, TSR, WDR, GErr and WSD.

    python benchmarks/text_sst2.py                       # MiniLM suspect (slow on 2 CPU cores: see README)
    python benchmarks/text_sst2.py --arch textcnn        # the fast TextCNN suspect

See ``_text_bench.py`` for the configurations (driver: ``_bench.py``); results go to
``benchmarks/results/text_sst2-<arch>.json/.md``.
"""

import sys

from _bench import main
from _text_bench import TEXT_SUITE

if __name__ == "__main__":
    sys.exit(main(TEXT_SUITE, "Text watermarks on SST-2", "text_sst2", "sst2:train", "sst2:test",
                  default_target=1, doc=__doc__))
