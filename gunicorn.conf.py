"""gunicorn settings shared by the Procfile and docker-compose.

The access log leaves out the query string and the remote user: an API key sent by mistake as
``?api_key=`` or as a Basic-auth user name must never reach a log file.
"""
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
