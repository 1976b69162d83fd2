"""The administrators' web console: server-rendered Jinja2 pages with HTMX, Chinese first."""
