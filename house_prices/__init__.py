from importlib.metadata import PackageNotFoundError, version

try: __version__ = version("house-prices")  # set from git by setuptools-scm when the project was installed
except PackageNotFoundError: __version__ = "0.0.0"
