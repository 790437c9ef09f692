"""Mail to customers: voicemail messages, activation notices, reminders."""
