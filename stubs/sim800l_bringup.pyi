"""The SIM800L's bring-up, GPRS context, connect and close (generators): used by sim800l."""
