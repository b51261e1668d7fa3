"""The reward-classifier commands of `hilserl` (registered by `hilserl.cli`):

  hilserl reward record --sim --out data/reward                       (labelled by the simulation's ground truth)
  hilserl reward record --sim --config_path configs/sim_pretrain.json --out data/reward_dr   (randomized scenes)
  hilserl reward record --sim --config_path configs/sim_pretrain.json --env.look=heldout_a --out data/reward_a
  hilserl reward record --config_path configs/so101_grasp.json --out data/reward   (the real arm, the s key)
  hilserl reward train --dataset data/reward --out outputs/reward_classifier
"""

from __future__ import annotations

import sys

from hilserl.cli import rich_console


def cmd_reward_record(args, overrides) -> int:
    if not args.sim:
        return _reward_record_real(args, overrides)
    from hilserl.reward.dataset import dataset_summary, load_dataset
    from hilserl.reward.sim_dataset import collect_sim_dataset

    env_cfg = None
    if args.config_path is not None or overrides:  # the simulation of a config: its randomization, look, scene
        from hilserl.cli_robot import load_env_config
        from hilserl.sim.env import GraspCubeConfig

        env_cfg = load_env_config(args.config_path, overrides)
        if not isinstance(env_cfg, GraspCubeConfig):
            print(f"error: env.type: --sim records in the simulation; {args.config_path or 'the overrides'} "
                  f"describe(s) env.type {env_cfg.type!r} (the real arm: leave out --sim)", file=sys.stderr)
            return 2
    console = rich_console()
    cameras = tuple(c.strip() for c in args.cameras.split(",") if c.strip())
    page, hooks = None, {}
    try:
        if args.console:
            from hilserl.cli import _start_console

            page = _start_console(args, console)
            page.watch(str(args.out))
            hooks = {"watch": page}
        out = collect_sim_dataset(args.out, args.num_positive, args.num_negative, seed=args.seed,
                                  image_size=args.image_size, cameras=cameras, overwrite=args.overwrite,
                                  log=console.print if args.verbose else None, env_config=env_cfg, **hooks)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if page is not None:
            page.close()
    console.print(dataset_summary(load_dataset(out)))
    return 0


def _reward_record_real(args, overrides) -> int:
    """The real arm: the person moves it (leader arm, keyboard or gamepad) and switches the label with `s`."""
    from hilserl.cli_robot import load_env_config
    from hilserl.envs import make_env
    from hilserl.envs.so101 import SO101EnvConfig
    from hilserl.reward.dataset import DatasetWriter, dataset_summary, load_dataset
    from hilserl.reward.recording import record_with_env
    from hilserl.train.record import hold_still

    if args.config_path is None:
        print("error: --config_path (a config with an env section of type so101) or --sim is needed", file=sys.stderr)
        return 2
    env_cfg = load_env_config(args.config_path, overrides)
    if not isinstance(env_cfg, SO101EnvConfig):
        print("error: env.type: the config's env is the simulation; pass --sim to label from its ground truth",
              file=sys.stderr)
        return 2
    cameras = list(env_cfg.cameras)
    size = env_cfg.camera_size(cameras[0])
    writer = DatasetWriter(args.out, cameras, (*size, 3), source="so101", overwrite=args.overwrite, with_arm=True)
    env, page = make_env(env_cfg), None
    print("Move the arm with the leader (or keys/gamepad). Press s when the cube is held up (the label turns to "
          "success) and s again when it is not; r drops the episode, q stops.")
    try:
        hooks, record_env = {}, env
        if args.console:
            from hilserl.cli import _start_console

            page = _start_console(args, rich_console())
            record_env, _ = page.attach_record(env, None, env_cfg.gripper_mode, None, "reward_record")
            hooks = {"before_episode": page.before_episode, "on_label": page.labelled,
                     "on_episode": page.reward_recorded}
        res = record_with_env(writer, record_env, args.num_episodes, hold_action=hold_still(env_cfg.gripper_mode),
                              **hooks)
    finally:
        env.close()
        if page is not None:
            page.close()
    print(f"{res['saved']} episodes saved ({res['dropped']} dropped)")
    rich_console().print(dataset_summary(load_dataset(args.out)))
    return 0


def cmd_reward_train(args, overrides) -> int:
    if overrides:
        raise SystemExit(f"hilserl reward train: unknown arguments {overrides}")
    from hilserl.reward.train import ClassifierTrainConfig, format_report, train_classifier

    cfg = ClassifierTrainConfig(encoder=args.encoder, trim_head=not args.no_trim_head, steps=args.steps,
                                batch_size=args.batch_size, lr=args.lr, num_shifts=args.num_shifts,
                                test_fraction=args.test_fraction, target_precision=args.target_precision,
                                seed=args.seed, torch_threads=args.torch_threads,
                                backbone_weights=args.backbone_weights,
                                arm_state=False if args.images_only else None, arm_veto=not args.no_arm_veto)
    try:
        cfg.validate()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from hilserl.reward.dataset import DatasetError

    console = rich_console()
    try:
        res = train_classifier(args.dataset, args.out, cfg, log=console.print)
    except (DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    console.print(format_report(res))
    return 0


def add_parsers(sub) -> None:
    r = sub.add_parser("reward", help="the reward classifier: record a labelled dataset, train it")
    rsub = r.add_subparsers(dest="reward_command", required=True)
    _add_record_parser(rsub)
    _add_train_parser(rsub)


def _add_record_parser(rsub) -> None:
    x = rsub.add_parser("record", help="record labelled frames: on the real arm (--config_path with env type so101; "
                                       "the s key switches the label) or --sim (automatic, from the simulation)",
                        epilog="With --sim, --config_path (a simulation config such as configs/sim_pretrain.json) "
                               "and --env.key=value overrides choose the simulation the frames come from: its "
                               "randomization hooks, held-out look (--env.look=heldout_a) and scene; --cameras and "
                               "--image_size stay the dataset's own. Without them: the simulation's defaults.")
    x.add_argument("--sim", action="store_true", help="label with the simulation's ground truth")
    x.add_argument("--config_path", default=None,
                   help="real arm: the training config (env section of type so101); --sim: a simulation config "
                        "whose env section (randomization, look, scene) the frames are drawn in")
    x.add_argument("--num_episodes", type=int, default=30, help="real arm: episodes to record")
    x.add_argument("--out", required=True, help="dataset folder to create")
    x.add_argument("--num_positive", type=int, default=200)
    x.add_argument("--num_negative", type=int, default=1000)
    x.add_argument("--cameras", default="gripper,front", help="comma-separated cameras to store")
    x.add_argument("--image_size", type=int, default=128)
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    x.add_argument("--verbose", action="store_true", help="one line per episode")
    from hilserl.cli import _add_console_arguments

    _add_console_arguments(x)
    x.set_defaults(func=cmd_reward_record)


def _add_train_parser(rsub) -> None:
    x = rsub.add_parser("train", help="train the classifier, report held-out metrics, pick the threshold, save")
    x.add_argument("--dataset", required=True)
    x.add_argument("--out", required=True, help="folder for classifier.safetensors + classifier.json")
    x.add_argument("--encoder", default="efficientnet_lite0", choices=["efficientnet_lite0", "resnet10"])
    x.add_argument("--backbone_weights", default=None, help="local weights file (resnet10)")
    x.add_argument("--no_trim_head", action="store_true", help="efficientnet_lite0: keep the 1280-channel head conv")
    x.add_argument("--steps", type=int, default=300)
    x.add_argument("--batch_size", type=int, default=64)
    x.add_argument("--lr", type=float, default=3e-4)
    x.add_argument("--num_shifts", type=int, default=4, help="cached random shifts per training frame")
    x.add_argument("--test_fraction", type=float, default=0.25, help="share of episodes held out")
    x.add_argument("--target_precision", type=float, default=0.99)
    x.add_argument("--images_only", action="store_true",
                   help="ignore the arm state the dataset stores (gripper opening, velocity and command, end-effector "
                        "height); by default the classifier reads it beside the images when the dataset has it")
    x.add_argument("--no_arm_veto", action="store_true",
                   help="without the arm-only head whose 'no' the images cannot overrule (on by default with the "
                        "arm state)")
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--torch_threads", type=int, default=0, help="0: torch's default")
    x.set_defaults(func=cmd_reward_train)


__all__ = ["add_parsers", "cmd_reward_record", "cmd_reward_train"]
