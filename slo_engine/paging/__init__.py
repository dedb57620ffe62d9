"""From a burning tier to a Slack message: burn alerts, evaluation, Block Kit, delivery."""
