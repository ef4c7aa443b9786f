"""What determines the images of a dataset split, as a key: equal keys, equal images. The
reference statistics (genjax.metrics.reference_stats) and the latent cache
(genjax.families.diffusion.latent) are filed under it: a built-in dataset by name, split and
preprocessing; a TFDS dataset by its full name and version; a folder by its resolved path, its
holdout and a fingerprint of its image files (relative names, sizes and modification times: one
listing, no image read)."""

import hashlib
import os

from genjax import paths


def source_key(data_cfg, split: str) -> dict:
  """What determines the images of `split` of the dataset `data_cfg` (a genjax.config.Data), as
  the module docstring says: equal keys, equal images."""
  key = {"dataset": data_cfg.name, "split": split, "binarize": data_cfg.binarize}
  sized = {"image_size": data_cfg.image_size, "channels": data_cfg.channels, "crop_size": data_cfg.crop_size}
  if data_cfg.name == "folder":
    root, fingerprint = folder_fingerprint(data_cfg.path)
    key.update(path=root, files=fingerprint, holdout=data_cfg.holdout, **sized)
  elif data_cfg.name.startswith("tfds:"):
    from genjax.data import tfds_io

    builder = tfds_io.open_any(data_cfg.name[len("tfds:") :], data_cfg)
    key.update(tfds=builder.info.full_name, **sized)  # name/config/version
  return key


def folder_fingerprint(path: str) -> tuple:
  """(the folder's resolved path, a SHA-256 of the relative name, size and modification time of
  every image data.name="folder" reads under it), from one listing: no image is read."""
  from genjax.data import files

  images, _, _ = files.list_images(path)
  root = str(paths.path(path))
  digest = hashlib.sha256()
  for name, size, mtime in _stat(root, images):
    digest.update(f"{name}\t{size}\t{mtime}\n".encode())
  return root, digest.hexdigest()


def _stat(root: str, images: list):
  """(name relative to root, size, modification time) of each image file under root."""
  if not paths.is_remote(root):
    for full in images:
      stat = os.stat(full)
      yield os.path.relpath(full, root), stat.st_size, stat.st_mtime_ns
    return
  import fsspec

  fs, top = fsspec.core.url_to_fs(root)
  fs.invalidate_cache(top)  # the listing as it is now, not as this process last saw it
  listing = fs.find(top, detail=True)  # one listing of the bucket prefix, with sizes and times
  for full in images:
    name = os.fspath(full).split("://", 1)[-1]
    info = listing[fs._strip_protocol(full)]
    changed = next((info[k] for k in ("generation", "mtime", "updated", "LastModified") if info.get(k)), "")
    yield name[len(top) :].lstrip("/"), info.get("size"), str(changed)
