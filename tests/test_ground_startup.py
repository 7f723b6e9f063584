"""The ground decoder loads compressai's layers without its package __init__ (issue: start-up)."""

import subprocess
import sys


def test_decoder_start_up_skips_compressai_datasets_and_dynamo():
    code = (
        "import sys\n"
        "from fool.shared import zoo\n"
        "from fool.shared.latent_codec import LatentCodec\n"
        "from fool.ground.synthesis import TorchSynthesis\n"
        "sha = LatentCodec.load(zoo.find('fool-m').tables).weights_sha256\n"
        "s = TorchSynthesis('fool-m', sha)\n"
        "heavy = [m for m in ('compressai.datasets', 'torch_geometric', 'torch._dynamo') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import compressai\n"
        "assert compressai.get_entropy_coder() == 'ans' and 'ans' in compressai.available_entropy_coders()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
