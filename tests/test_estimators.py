"""scikit-learn's estimator checks over every custom transformer the package defines."""
import importlib
import inspect
import pkgutil

from sklearn.base import BaseEstimator
from sklearn.utils.estimator_checks import parametrize_with_checks

import house_prices


def custom_estimators():
    "Every scikit-learn estimator class defined in the house_prices package."
    found = {}
    for mod in pkgutil.iter_modules(house_prices.__path__):
        m = importlib.import_module(f"house_prices.{mod.name}")
        for _, cls in inspect.getmembers(m, inspect.isclass):
            if issubclass(cls, BaseEstimator) and cls.__module__.startswith("house_prices."):
                found[cls.__qualname__] = cls
    return list(found.values())


def test_there_are_custom_estimators_to_check():
    assert sorted(c.__name__ for c in custom_estimators()) == ["BatchInvariantLasso", "DerivedFeatures"]


@parametrize_with_checks([cls() for cls in custom_estimators()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
