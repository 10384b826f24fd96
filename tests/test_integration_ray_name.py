"""The name redirect() gives records by default inside a Ray actor, read through Ray's public
API only: the actor's name, else its class."""

from __future__ import annotations

from conftest import run_python


def test_a_plain_redirect_in_an_actor_is_named_after_the_actor_or_its_class(tmp_path):
    result = run_python(
        f"""
        import ray

        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)

        @ray.remote
        class Trainer:
            def __init__(self, log):
                import skyrl_fdlog
                self.redirection = skyrl_fdlog.redirect(log)

            def name(self):
                return self.redirection.name

        unnamed = Trainer.remote({str(tmp_path / "a.log")!r})
        named = Trainer.options(name="the-named-one").remote({str(tmp_path / "b.log")!r})
        print(ray.get(unnamed.name.remote()), ray.get(named.name.remote()))
        ray.shutdown()
    """,
        timeout=180,
    )
    assert result.stdout.decode().split()[-2:] == ["Trainer", "the-named-one"]
