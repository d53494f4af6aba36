"""What travels: Ebbot's webhooks as models, the event on the bus, the errors a webhook can earn, time."""
