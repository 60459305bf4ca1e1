"""An example Breakwater catalog: invoices issued and paid (see `my_events.catalog`)."""
