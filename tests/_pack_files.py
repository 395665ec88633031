"""Shared test helper for HDF5 packs: damage the stored bytes of one row's chunk."""
from pathlib import Path


def damage_chunk(path, dataset, row):
    """Flip 16 bytes in the middle of the chunk of ``row`` of ``dataset`` (a pack stores one row a chunk), in place."""
    import h5py

    path = Path(path)
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(row)
    data = bytearray(path.read_bytes())
    for k in range(info.byte_offset + info.size // 3, info.byte_offset + info.size // 3 + 16):
        data[k] ^= 0xA5
    path.write_bytes(bytes(data))
