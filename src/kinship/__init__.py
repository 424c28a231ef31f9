"""Kinship verification from face photos: FIW data preparation, siamese members and their ensemble.

Importing this package (or running prepare, ensemble or report) never loads TensorFlow or torch:
each member imports its framework inside its own module, and the registry imports a member
only when it is built.
"""

__version__ = "0.1.0"
