"""torchvision behind one module: it imports (models included) whether or not its C++ ops load."""

from fairbench.torchvision_compat import import_torchvision


def test_models_and_transforms_import() -> None:
    torchvision = import_torchvision()
    model = torchvision.models.resnet18(num_classes=2)
    assert sum(p.numel() for p in model.parameters()) > 10_000_000
    assert import_torchvision() is torchvision  # a second call reuses the import
    from torchvision.transforms import v2

    assert v2.Resize((64, 64)) is not None
