"""gunicorn settings shared by the Procfile and docker-compose.

The access log leaves out the query string and the remote user: an API key sent by mistake as
``?api_key=`` or as a Basic-auth user name must never reach a log file.

Workers and threads (issue 7, measured on the 2-core machine with 50 closed-loop publish clients,
10 endpoints, /tmp load of bench/run.py's ``_api_load``; noisy, two rounds each): 2 workers x 4
threads 155-163 req/s; 2 x 8 122-127; 2 x 1 (sync, no keep-alive) 111-165; 4 x 2 81-133;
4 x 1 76-87. A publish is mostly CPU in Python with three short waits (PostgreSQL twice, Redis
once), so one process per core with a few threads to cover the waits is best; more processes
only add contention on two cores. ``WEB_CONCURRENCY`` / ``GUNICORN_THREADS`` override them for
bigger machines (rule of thumb: workers = cores). Command-line flags win over this file, so the
Procfile, docker-compose.yml and the Dockerfile pass no ``--workers``/``--threads``
(tests/deploy/test_web_concurrency.py).
"""
import os

accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
