"""Scale-out scoring on Ray Data (``clsrun predict INPUT --engine ray``): the local engine's stages placed on Ray.

- ``inputs.py``: INPUT as a sorted set of files on any pyarrow filesystem;
- ``stages.py``: the read task, the model actor and the write task;
- ``engine.py``: the driver (``score_with_ray``): loads and checks the bundle, runs the job, proves every
  row arrived exactly once, writes the manifest and publishes the output folder.

Ray itself is imported lazily: importing this package works without the ``ray`` extra.
"""
