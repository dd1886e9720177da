# -*- coding: utf-8 -*-
# Copyright: onprem.ingress developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files named by the user (an engine flag, a module option): read them, or say in one line
which option named what and why the system refused it. Shared by the engine and the modules.

The operating system refuses a path in ways Python reports as different exceptions: a NUL byte
is a ``ValueError`` ("embedded null byte"), an over-long name ``ENAMETOOLONG``, a directory
``EISDIR``, a socket ``ENXIO``, a loop of symbolic links ``ELOOP``; a file that is not UTF-8
is a ``UnicodeDecodeError``. Every one becomes an ``InputFileError`` whose text is
``<option> <value>: <what is wrong>; <what to change>``.
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import errno
import os
import stat
from typing import Optional, Union

MAX_SHOWN = 80  # characters of a bad value shown in a message

# errno -> what it means for a file the user named (the rest: the system's own words)
_REASONS = {
    errno.ENOENT: "no such file",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "it is a directory, not a file",
    errno.ENAMETOOLONG: "the name is too long for the file system",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENXIO: "it is not a regular file (a socket or a device)",
}


class InputFileError(ValueError):
    """A file the user named cannot be used; the text names the option and the value."""


def shown(value: object) -> str:
    """The value as the user can read it back: repr, shortened."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 5] + "...'"


def path_problem(path: str, directory: bool = False) -> Optional[str]:
    """Why ``path`` cannot name a file (or a directory, with ``directory``) before anything
    opens it, or None. Only what no file system accepts; what opening finds comes later."""
    if not isinstance(path, str) or not path:
        return "it is empty"
    if "\x00" in path:
        return "the name holds a NUL byte, which no file name can"
    try:
        encoded = os.fsencode(path)
    except UnicodeError:
        return "the name is not valid in this system's file name encoding"
    if len(encoded) >= 4096 or any(len(part) > 255 for part in encoded.split(b"/")):
        return "the name is too long for the file system"
    if directory:
        try:
            mode = os.stat(path).st_mode
        except (OSError, ValueError) as exc:
            if getattr(exc, "errno", None) == errno.ENOENT:
                return None  # created when needed
            return os_reason(exc)
        if not stat.S_ISDIR(mode):
            return "it is not a directory"
    return None


def os_reason(exc: BaseException) -> str:
    """What an exception from opening or reading a file means, in a few words."""
    if isinstance(exc, UnicodeDecodeError):
        return "it is not UTF-8 text (byte %d)" % exc.start
    if isinstance(exc, OSError):
        return _REASONS.get(exc.errno or 0, exc.strerror or str(exc))
    if isinstance(exc, ValueError) and "null" in str(exc):
        return "the name holds a NUL byte, which no file name can"
    return str(exc)


def file_problem(path: str) -> Optional[str]:
    """Why ``path`` names no regular file that could be read, or None (checked without opening
    it: a FIFO would block the reader)."""
    problem = path_problem(path)
    if problem is not None:
        return problem
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError) as exc:
        return os_reason(exc)
    if stat.S_ISDIR(mode):
        return _REASONS[errno.EISDIR]
    if not stat.S_ISREG(mode):
        return "it is not a regular file (a socket, a pipe or a device)"
    return None


def read_file(
    path: str, option: str, binary: bool = False, hint: str = "point it at a readable file"
) -> Union[str, bytes]:
    """The content of the file ``option`` names (text, UTF-8; bytes with ``binary``)."""
    problem = file_problem(path)
    if problem is None:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
            return data if binary else data.decode("utf-8")
        except (OSError, ValueError) as exc:
            problem = os_reason(exc)
    raise InputFileError("%s %s: %s; %s" % (option, shown(path), problem, hint))
