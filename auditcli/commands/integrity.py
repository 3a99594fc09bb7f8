"""Commands of this area are added here."""
