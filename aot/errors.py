"""Why an artifact was refused. Every refusal happens before any of its code runs.

    ArtifactError                  base: catch this to handle any bad artifact
    ├── ArtifactFormatError        not a zip, no/malformed manifest, unsafe member names
    │   └── ArtifactVersionError   a format version this tessel does not read
    ├── ArtifactIntegrityError     truncated, a member's sha256 or size differs, members missing or extra
    │   └── ArtifactLimitError     uncompressed sizes above the caps (zip bombs)
    ├── ArtifactTargetError        built for another architecture / OS, or CPU features the host lacks
    ├── ArtifactBackendError       a backend this runtime cannot run, or a program it cannot hold
    └── ArtifactProgramError       systolic: the program fails validation (runtime/systolic/
        │                          validate.py), does not decode, or its host image layout is bad
        └── ArtifactConfigError    systolic: the machine configuration is invalid, or an
                                   override changes a field the program depends on

Wrong argument shapes or dtypes at call time are TypeErrors, as for every Executable.
"""
from __future__ import annotations


class ArtifactError(Exception):
    """A .tsl artifact that cannot be loaded; the message names the file and what mismatched."""


class ArtifactFormatError(ArtifactError):
    pass


class ArtifactVersionError(ArtifactFormatError):
    pass


class ArtifactIntegrityError(ArtifactError):
    pass


class ArtifactLimitError(ArtifactIntegrityError):
    pass


class ArtifactTargetError(ArtifactError):
    pass


class ArtifactBackendError(ArtifactError):
    pass


class ArtifactProgramError(ArtifactError):
    pass


class ArtifactConfigError(ArtifactProgramError):
    pass
