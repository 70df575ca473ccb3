"""AI upscaler: SRVGGNetCompact in the realesr-general-x4v3.pth layout, loaded or refused clearly."""

from __future__ import annotations

import pytest
import torch

from app.pipeline.plan import RenderError
from app.pipeline.upscaler import SRVGGNetCompact, load_upscaler

# the small variant keeps the tests fast; the layout rules are the same as num_conv=32
SMALL = dict(num_feat=8, num_conv=2)


def _weights(tmp_path, name="w.pth", key="params", **arch):
    torch.manual_seed(0)
    net = SRVGGNetCompact(**(arch or SMALL))
    sd = net.state_dict()
    path = tmp_path / name
    torch.save({key: sd} if key else sd, path)
    return path, net


def test_state_dict_layout_is_realesr_general_x4v3():
    sd = SRVGGNetCompact().state_dict()  # the defaults are realesr-general-x4v3
    assert sd["body.0.weight"].shape == (64, 3, 3, 3)
    assert sd["body.1.weight"].shape == (64,)  # PReLU
    assert sd["body.66.weight"].shape == (48, 64, 3, 3)  # 3 * 4 * 4 channels for the shuffle
    assert len([k for k in sd if k.endswith("weight")]) == 67
    assert set(sd) == {f"body.{i}.weight" for i in range(67)} | {f"body.{i}.bias" for i in range(0, 67, 2)}


@pytest.mark.parametrize("key", ["params", "params_ema", None])
def test_loads_and_upscales_4x(tmp_path, key):
    path, net = _weights(tmp_path, key=key)
    up = load_upscaler(str(path), "cpu")
    x = torch.rand(1, 3, 12, 20)
    y = up(x)
    assert y.shape == (1, 3, 48, 80) and y.dtype == torch.float32
    assert 0.0 <= y.min() and y.max() <= 1.0
    with torch.no_grad():
        assert torch.allclose(y, net(x).clamp(0, 1), atol=1e-5)
    assert up(x[0]).shape == (3, 48, 80)  # a single image works too


def test_full_size_network_loads(tmp_path):
    full = SRVGGNetCompact()
    torch.save({"params": full.state_dict()}, tmp_path / "full.pth")
    up = load_upscaler(str(tmp_path / "full.pth"), "cpu")
    assert up.net.num_conv == 32 and up.net.num_feat == 64 and up.scale == 4
    assert up(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)


def test_deterministic(tmp_path):
    path, _ = _weights(tmp_path)
    up = load_upscaler(str(path), "cpu")
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(up(x), up(x))
    assert torch.equal(load_upscaler(str(path), "cpu")(x), up(x))


def test_no_path_is_a_clear_error():
    for p in (None, ""):
        with pytest.raises(RenderError, match="needs a weights file"):
            load_upscaler(p, "cpu")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(RenderError, match="not found") as e:
        load_upscaler(str(tmp_path / "nope.pth"), "cpu")
    assert "nope.pth" in str(e.value)


def test_wrong_keys_are_refused(tmp_path):
    sd = SRVGGNetCompact(**SMALL).state_dict()
    bad = {k.replace("body.", "layers."): v for k, v in sd.items()}
    torch.save({"params": bad}, tmp_path / "bad.pth")
    with pytest.raises(RenderError, match="SRVGGNetCompact"):
        load_upscaler(str(tmp_path / "bad.pth"), "cpu")
    extra = dict(sd, **{"body.99.bias": torch.zeros(3)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(RenderError, match="SRVGGNetCompact"):
        load_upscaler(str(tmp_path / "extra.pth"), "cpu")
    shapes = dict(sd)
    shapes["body.2.weight"] = torch.zeros(8, 8, 5, 5)
    torch.save({"params": shapes}, tmp_path / "shapes.pth")
    with pytest.raises(RenderError, match="SRVGGNetCompact"):
        load_upscaler(str(tmp_path / "shapes.pth"), "cpu")


def test_not_a_weights_file_is_refused(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a torch file" * 10)
    with pytest.raises(RenderError, match="cannot read"):
        load_upscaler(str(junk), "cpu")
    torch.save({"params": {"a": 1}}, tmp_path / "odd.pth")
    with pytest.raises(RenderError, match="not a Real-ESRGAN weights file"):
        load_upscaler(str(tmp_path / "odd.pth"), "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_requested_without_cuda(tmp_path):
    path, _ = _weights(tmp_path)
    with pytest.raises(RenderError, match="CUDA"):
        load_upscaler(str(path), "cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_half_precision_matches_cpu(tmp_path):
    path, _ = _weights(tmp_path)
    gpu = load_upscaler(str(path), "cuda")
    cpu = load_upscaler(str(path), "cpu")
    assert gpu.half and next(gpu.net.parameters()).dtype == torch.float16
    x = torch.rand(1, 3, 32, 32)
    y = gpu(x)
    assert y.device.type == "cuda" and y.dtype == torch.float32
    assert (y.cpu() - cpu(x)).abs().max() < 2e-2
