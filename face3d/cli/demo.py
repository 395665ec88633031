"""``face3d demo`` (and the root ``demo.py``): 3D faces from images with a trained PRNet (``face3d.prnet.demo``)."""
import sys
from pathlib import Path

from face3d.cli._common import (
    MODEL_TYPES,
    Command,
    add_max_pixels_argument,
    add_trust_model_argument,
    error_text,
    field_default,
    setup_logging,
)
from face3d.utils.errors import install_command

__all__ = ["DEMO", "run_demo_command", "main"]

_DESCRIPTION = (
    f"Reconstruct the 3D face in images with a trained PRNet ({MODEL_TYPES}). The face comes from --box, from "
    f"--landmarks, or from dlib's detector when it is installed ({install_command('detect')}: dlib-bin and "
    "face_recognition_models). Per image <stem>: <stem>_landmarks.jpg, _mesh.jpg, _depth.png, .obj (--texture: "
    ".mtl + _texture.png), _kpt.txt and _pose.json. An image that cannot be read or written is named on stderr and "
    "skipped (none of its files is left), the others are written, and the exit status is 1; two images sharing a "
    "stem are refused (status 2). A full disk (or quota, or a read-only file system) stops the run at the first "
    "refused write: one line naming the output folder, the image and the counts so far, status 2.")


def _add_arguments(parser):
    from face3d.prnet.training import TrainConfig

    default_model = str(Path(field_default(TrainConfig, "output")) / "best.keras")  # where `face3d train` puts it
    parser.add_argument("-i", "--input", nargs="+", required=True, metavar="PATH",
                        help="images and/or folders of images (hidden files left out)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="output folder (created), not one of the input folders")
    parser.add_argument("--model", default=default_model, metavar="PATH",
                        help=f"trained network: {MODEL_TYPES} (%(default)s)")
    add_trust_model_argument(parser)
    parser.add_argument("--uv-data", metavar="DIR",
                        help="UV data the network was trained with (default: PRNet's Data/uv-data beside its "
                             "released checkpoint, else the embedded default model's; needed for a .keras file "
                             "import-prnet wrote)")
    parser.add_argument("--bfm", metavar="BFM.mat", help="morphable model of the UV data, for the pose's canonical "
                                                         "face (default: the embedded default model; not read when "
                                                         "the uv-data has its own canonical_vertices.npy: a warning "
                                                         "says so, a missing file is still an error)")
    face = parser.add_mutually_exclusive_group()
    face.add_argument("--box", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"),
                      help="face box in image pixels, for every input image (PRNet's crop: 1.58 x its mean side, "
                           "in whole pixels)")
    face.add_argument("--landmarks", metavar="FILE|DIR",
                      help="68 landmarks (iBUG .pts, .txt/.npy (68, 2|3) or (2|3, 68), or .mat with pt3d_68/pt2d); "
                           "a folder holds one <stem>.pts/.txt/.npy/.mat per image")
    parser.add_argument("--texture", action="store_true", help="OBJ with a UV texture map instead of vertex colours")
    parser.add_argument("--detector", choices=("auto", "cnn", "hog"), default="auto",
                        help="dlib detector used when neither --box nor --landmarks is given (auto: the CNN when "
                             "face_recognition_models is installed, else HOG)")
    add_max_pixels_argument(parser)


def run_demo_command(args):
    """Run the demo; returns the exit status: 0 when every image was written or had no face, 1 when one failed
    (named on stderr and skipped, the others written), 2 on arguments that fit no image (a missing input, images
    sharing a stem, a bad box, landmark file, model or --bfm), with a message naming it, and (through
    ``run_parsed``) for a write the file system refuses for good (a full disk), which stops the run."""
    setup_logging()
    from face3d.prnet.detect import DetectorUnavailable

    try:
        from face3d.prnet.demo import counts_line, run_demo

        summary = run_demo(args.input, args.output, args.model, uv_data=args.uv_data, bfm=args.bfm, box=args.box,
                           landmarks=args.landmarks, texture=args.texture, detector=args.detector,
                           trust_model=args.trust_model, max_pixels=args.max_pixels)
    except DetectorUnavailable as error:
        print(f"{args.prog}: error: {error}; or give the face box (--box X0 Y0 X1 Y1) or its 68 landmarks "
              "(--landmarks FILE|DIR)", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"{args.prog}: error: {error_text(error)}", file=sys.stderr)
        return 2
    print(counts_line(summary))
    return 1 if summary["failures"] else 0


DEMO = Command("demo", "reconstruct 3D faces in images with a trained PRNet (landmarks, mesh, depth, OBJ, pose)",
               _DESCRIPTION, _add_arguments, run_demo_command)


def main(argv=None, prog=None):
    """``face3d demo`` as a program of its own (the root ``demo.py``); returns the exit status."""
    return DEMO.main(argv, prog)
