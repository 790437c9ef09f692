"""The thin shell around the pure core: ARI events in, ARI requests out.

``dispatcher`` routes each typed ARI event to the call that owns the channel;
``call_runner`` owns one call (its queue, its state machine, its timers);
``executor`` turns the core's commands into ARI requests and feeds failures
back as events. Collaborators are passed in as ``Protocol``s (``ports``).
"""
