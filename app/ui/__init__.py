"""Qt widgets: thin views over the Qt-free services (app.services, app.jobs)."""
