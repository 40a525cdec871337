"""The approval step: signed links, the request email, the page a person decides on."""
