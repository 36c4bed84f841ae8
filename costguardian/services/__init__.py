"""Domain logic. Views, the JSON API, CLI commands and tasks all call these;
nothing here imports Flask's request."""
