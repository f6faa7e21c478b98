"""The room server's plain-Python parts: seat cards, the hub's login check, and how big each
participant's share of the machine is.

Nothing here imports TensorFlow, so the hub image (JupyterHub without the kit's training stack)
uses these modules as they are:

* :mod:`hello_dl.room.cards`   seat cards: codes made with ``secrets``, only their scrypt hashes
  stored (``seats.json``, mode 0600), a printable page for the instructor (``cards.html``).
* :mod:`hello_dl.room.sizing`  the stated rule for each participant's CPU and memory limits.
* :mod:`hello_dl.room.auth`    the JupyterHub authenticator that lets in seat cards and nobody
  else (imports JupyterHub; loaded only by the hub).
* :mod:`hello_dl.room.records` the room's run records, one small file per run (plain Python).
* :mod:`hello_dl.room.store`   the results board's store, a JupyterHub service (loaded only by the hub).

:mod:`hello_dl.room.board`, the results board itself (pooling, the figure), runs in the kit's own
image and notebooks: it draws with Matplotlib.
"""
