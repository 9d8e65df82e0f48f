"""The write side: the model language, the ERP declared in it, the event store, the command pipeline."""
