"""Files shipped inside the package, found through ``importlib.resources`` (a source checkout, an editable or a
plain wheel install, from any working directory).

``face3d/data/uv-data/``: PRNet's six uv-data files for the embedded default model at 256
(``face3d uv-data`` writes them; ``face3d.trainset.uv_layout`` reads them).
"""
from importlib import resources
from pathlib import Path

__all__ = ["default_uv_data_dir"]


def default_uv_data_dir() -> Path:
    """The folder of the packaged uv-data (the embedded default model's, R = 256).

    Raises:
        FileNotFoundError: the package was installed without its data files.
    """
    folder = resources.files("face3d") / "data" / "uv-data"
    if not isinstance(folder, Path) or not folder.is_dir():
        raise FileNotFoundError(f"{folder}: face3d's packaged uv-data is missing (reinstall face3d)")
    return folder
