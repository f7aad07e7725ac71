"""The ``deckhand`` command line.

    deckhand run                                start the bot (Socket Mode unless DECKHAND_MODE=http)
    deckhand check-config [FILE]                validate a configuration and print what it means
    deckhand render WORKLOAD ENV [--image REF]  print exactly what /deploy would apply
    deckhand audit [--since 24h]                print the audit log as JSON lines
    deckhand rbac [--config FILE]               print the Kubernetes RBAC the configuration needs
    deckhand kubeconfig -o FILE                 write a kubeconfig for the deckhand ServiceAccount
    deckhand ids                                list Slack users, user groups and channels with IDs

Settings come from the environment (``DECKHAND_*``, see bot/settings.py and the README).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from deckhand.bot.errors import ConfigError
from deckhand.bot.settings import FileSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deckhand", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="start the bot")
    cc = sub.add_parser("check-config", help="validate a configuration file")
    cc.add_argument("file", nargs="?", type=Path, default=None)
    rd = sub.add_parser("render", help="print what /deploy would apply")
    rd.add_argument("workload")
    rd.add_argument("environment")
    rd.add_argument("--image")
    rd.add_argument("--config", type=Path, default=None)
    au = sub.add_parser("audit", help="print the audit log as JSON lines")
    au.add_argument("--since", default="24h")
    rb = sub.add_parser("rbac", help="print the Kubernetes RBAC the configuration needs")
    rb.add_argument("--config", type=Path, default=None)
    rb.add_argument("--service-account", default="deckhand")
    rb.add_argument("--namespace", default="deckhand", help="the ServiceAccount's namespace")
    kc = sub.add_parser("kubeconfig", help="write a kubeconfig for the deckhand ServiceAccount "
                        "(asks the TokenRequest API with your current kubeconfig)")
    kc.add_argument("-o", "--output", type=Path, required=True)
    kc.add_argument("--service-account", default="deckhand")
    kc.add_argument("--namespace", default="deckhand", help="the ServiceAccount's namespace")
    kc.add_argument("--duration", default="8760h", help="token lifetime (default a year)")
    kc.add_argument("--admin-kubeconfig", type=Path, default=None,
                    help="the kubeconfig that may request tokens (default $KUBECONFIG)")
    kc.add_argument("--context", default=None)
    sub.add_parser("ids", help="list the Slack users, user groups and channels the bot sees")
    ns = parser.parse_args(argv)
    from deckhand.bot import logs

    logs.setup()
    if ns.cmd == "run":
        stop = threading.Event()
        # Kubernetes stops a pod with SIGTERM: close the Slack connection and exit cleanly.
        # Pending requests live in the database; an interrupted execution is reported as such
        # by the next start.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        try:
            from deckhand.bot.app import run

            code = run(stop)
        except ConfigError as e:
            print(e, file=sys.stderr)
            return 2
        # Leave now: a worker still blocked in an API call (bounded by its timeout) must not
        # hold the process past the grace period. Everything that matters is in the database.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    if ns.cmd == "check-config":
        from deckhand.bot.kube.client import KubeSource
        from deckhand.bot.ops.check_config import check_config_main

        files = FileSettings()
        # Checked when there is one to check: a configuration can be checked on a machine
        # that has no cluster at hand (start-up always checks).
        present = files.kubeconfig is not None or bool(os.environ.get("KUBECONFIG")) or (
            Path.home() / ".kube" / "config").exists()
        kube = None if files.in_cluster or not present else KubeSource(
            kubeconfig=files.kubeconfig)
        return check_config_main(ns.file or files.config_file, sys.stdout, kube)
    if ns.cmd == "render":
        from deckhand.bot.ops.render import render_main

        return render_main(ns.config or FileSettings().config_file, ns.workload,
                           ns.environment, sys.stdout, image=ns.image)
    if ns.cmd == "rbac":
        from deckhand.bot.ops.rbac import rbac_main

        return rbac_main(ns.config or FileSettings().config_file, sys.stdout, sys.stderr,
                         ns.service_account, ns.namespace)
    if ns.cmd == "kubeconfig":
        from deckhand.bot.ops.kubeconfig import kubeconfig_main

        return kubeconfig_main(ns.output, ns.namespace, ns.service_account, ns.duration,
                               ns.admin_kubeconfig, ns.context, sys.stderr)
    if ns.cmd == "ids":
        from deckhand.bot.ops.ids import ids_main

        return ids_main(sys.stdout, sys.stderr)
    from deckhand.bot.ops.audit import audit

    return audit(ns.since, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
