"""The publications the built-in methods implement (a method's `paper`), one constant each."""

from fairbench.methods.base import Paper

ADT = Paper("Yaroslav Ganin et al.", "Domain-Adversarial Training of Neural Networks", "JMLR", 2016)
ALFR = Paper("Harrison Edwards, Amos Storkey", "Censoring Representations with an Adversary", "ICLR", 2016)
DOMAIN_IND = Paper(
    "Zeyu Wang et al.", "Towards Fairness in Visual Recognition: Effective Strategies for Bias Mitigation", "CVPR", 2020
)
DVGE = Paper("Jindi Zhang et al.", "Model Debiasing via Gradient-based Explanation on Representation", "AIES", 2023)
FAAP = Paper(
    "Zhibo Wang et al.",
    "Fairness-aware Adversarial Perturbation Towards Bias Mitigation for Deployed Deep Models",
    "CVPR",
    2022,
)
FDVAE = Paper(
    "Sungho Park et al.",
    "Learning Disentangled Representation for Fair Facial Attribute Classification via Fairness-aware "
    "Information Alignment",
    "AAAI",
    2021,
)
# FFVAE, and the "sensitive dimensions removed" reading of a code it introduced.
FFVAE = Paper("Elliot Creager et al.", "Flexibly Fair Representation Learning by Disentanglement", "ICML", 2019)
FILTER_DROP = Paper(
    "Shruti Nagpal, Maneet Singh, Richa Singh, Mayank Vatsa",
    "Attribute Aware Filter-Drop for Bias Invariant Classification",
    "CVPR Workshops",
    2020,
)
GBA = Paper(
    "Vinod K. Kurmi, Rishabh Sharma, Yash Vardhan Sharma, Vinay P. Namboodiri",
    "Gradient Based Activations for Accurate Bias-Free Learning",
    "AAAI",
    2022,
)
# GRAD-Pred, GRAD-Auto and NN-Auto.
GRAD = Paper(
    "Edward Raff, Jared Sylvester",
    "Gradient Reversal Against Discrimination: A Fair Neural Network Learning Approach",
    "IEEE DSAA",
    2018,
)
GROUP_DRO = Paper(
    "Shiori Sagawa, Pang Wei Koh, Tatsunori B. Hashimoto, Percy Liang",
    "Distributionally Robust Neural Networks for Group Shifts",
    "ICLR",
    2020,
)
LFF = Paper(
    "Junhyun Nam et al.", "Learning from Failure: Training Debiased Classifier from Biased Classifier", "NeurIPS", 2020
)
LFR = Paper(
    "Richard Zemel, Yu Wu, Kevin Swersky, Toniann Pitassi, Cynthia Dwork", "Learning Fair Representations", "ICML", 2013
)
REPAIR = Paper("Yi Li, Nuno Vasconcelos", "REPAIR: Removing Representation Bias by Dataset Resampling", "CVPR", 2019)
VFAE = Paper(
    "Christos Louizos, Kevin Swersky, Yujia Li, Max Welling, Richard Zemel",
    "The Variational Fair Autoencoder",
    "ICLR",
    2016,
)
JTT = Paper(
    "Evan Zheran Liu et al.",
    "Just Train Twice: Improving Group Robustness without Training Group Information",
    "ICML",
    2021,
)
DFR = Paper(
    "Polina Kirichenko, Pavel Izmailov, Andrew Gordon Wilson",
    "Last Layer Re-Training is Sufficient for Robustness to Spurious Correlations",
    "ICLR",
    2023,
)
REDUCTIONS = Paper(
    "Alekh Agarwal, Alina Beygelzimer, Miroslav Dudík, John Langford, Hanna Wallach",
    "A Reductions Approach to Fair Classification",
    "ICML",
    2018,
)
