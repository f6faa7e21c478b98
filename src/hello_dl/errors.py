"""Errors a user can act on. Each message names the file or setting involved and what to do."""


class HelloDLError(Exception):
    """Base class: the command line prints these as plain messages, without a traceback."""


class DataError(HelloDLError):
    """A data file or folder is missing, corrupt or laid out wrongly."""


class OfflineError(HelloDLError):
    """Something had to be downloaded and the network is not there."""


class ChecksumError(DataError):
    """A file's content does not match the shipped manifest."""


class WeightsError(HelloDLError):
    """Pretrained weights are missing, corrupt or do not fit the model."""


def unreadable_file(path: object) -> DataError:
    """A file this user may not read (permission denied): it is not damaged, so the message says so."""
    return DataError(f"{path} cannot be opened: you may not read it (permission denied). Ask whoever owns it "
                     f"to let you read it, or copy it into a folder of your own, and run again.")
