"""The report job: ``rillet run`` streams a report, ``rillet replay`` runs a recorded stream."""
