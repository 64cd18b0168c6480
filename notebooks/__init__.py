"""The numbered notebooks, their plot helpers (``_plots``) and their runner (``python -m notebooks``)."""
