"""podrelease: the shared domain package of the podinfo release control plane.

Every Lambda function of the control plane imports this package from the `common` layer. Handlers
stay thin (parse, call one function here, shape the reply); every rule lives in this package.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
